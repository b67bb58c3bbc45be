"""The synthetic sample generator: worlds of catalogues, customers and shopping, written in the raw H&M format."""
