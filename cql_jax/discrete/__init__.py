"""Discrete-action (Atari) CQL: losses, networks, the agent and the paper's variants."""
