"""cql_jax: Conservative Q-Learning in JAX/Flax."""
