"""Global introspection at corpus scale: prediction alignment, letter/phoneme patterns, Neuron
Activation Profiles per layer, clustering; streaming, resumable, in process or on Dask."""
