"""zooeval's base layer: registry, fingerprints and identity, the store (the only MongoDB code), dataset formats
and label mapping. It imports nothing of zooeval above it."""
