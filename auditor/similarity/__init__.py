"""Who duplicates whom: neighbour search, the duplicate graph and its evidence, and the duplicate decision."""
