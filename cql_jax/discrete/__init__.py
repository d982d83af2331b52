"""Discrete-action (Atari) CQL: losses, networks and the agent."""
