"""Agent projects: the `agent.yaml` manifest, its validation, and the developer workflow around it."""
