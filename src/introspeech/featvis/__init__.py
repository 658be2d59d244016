"""Feature visualization: inputs that maximize a letter, channel or neuron, regularized (frequency
penalties, transformation robustness, a learned prior), judged against real data, made audible."""
