"""spikec's custom Lava processes and their fixed_pt process models.

This package holds nothing else: Lava imports every module in a process's directory when it looks
for process models at compile time.
"""
