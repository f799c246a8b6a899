"""Data: the manifest contract (manifest), which rows train and validate (splits), decoding rows
into arrays (loading, imageio), `ceod data check` (checks), importers from annotation tools,
the two generators (the synthetic line, DecoyMNIST) and overlay drawing. No torch."""
