"""hn: a personal data vault and federation node."""

__version__ = "0.1.0"
