"""Where phones live in the network: probes with control tasks, CKA, uncertainty of every score."""
