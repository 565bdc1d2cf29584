"""Package docstring pending."""
