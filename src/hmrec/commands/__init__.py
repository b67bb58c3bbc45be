"""The `hmrec` command's sub-commands, one module per group; hmrec.cli assembles them into one app."""
