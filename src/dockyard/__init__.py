"""dockyard: a self-hostable runtime for Azure AI Foundry hosted agents."""

__version__ = "0.1.0"
