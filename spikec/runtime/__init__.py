"""Executors of the IR (float interpreter) and the shared float neuron recurrences."""
