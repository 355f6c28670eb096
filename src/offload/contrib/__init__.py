"""Adapters to frameworks (Django), each optional: the core never imports this package."""
