"""Relational trust: evidence-backed trust links, reputation aggregates, exposure and selectors."""
