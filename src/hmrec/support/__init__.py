"""Test and benchmark tooling, outside the service: a real `hmrec serve` subprocess and a throw-away PostgreSQL."""
