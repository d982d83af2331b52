"""Dataset makers: the project's own offline datasets, recorded from real environments.

They write Minari datasets that `cql_jax.data` then reads like any other; nothing in
`cql_jax.data` imports this package. `registry.ensure_available(dataset_id, download)` is the one
call that makes an id available: generated on demand, downloaded from Minari, or a message that
names the command which makes it.
"""
