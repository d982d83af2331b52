"""Continuous-action CQL on SAC: losses, networks, the agent and the paper's variants."""
