"""Graph passes (IR -> IR), one module per pass.  Shipped as ``spikec.passes``."""
