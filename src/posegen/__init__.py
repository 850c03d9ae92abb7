"""posegen: durable pose-generation service."""

__version__ = "0.1.0"
