"""cql_jax: Conservative Q-Learning (Kumar et al., 2020) in JAX/Flax."""
from setuptools import find_packages, setup

setup(
    name="cql_jax",
    version="0.1.0",
    description="Conservative Q-Learning for offline RL in JAX/Flax",
    packages=find_packages(include=["cql_jax", "cql_jax.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax", "flax", "optax", "chex", "numpy", "minari", "gymnasium",
        "ml-collections", "absl-py", "orbax-checkpoint", "tensorboardX", "tqdm", "matplotlib",
    ],
)
