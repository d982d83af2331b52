"""Dataset makers: the project's own offline datasets, recorded from real environments.

They write Minari datasets that `cql_jax.data` then reads like any other; nothing in
`cql_jax.data` imports this package.
"""
