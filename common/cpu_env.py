"""Process settings that only work when made before `import torch`: the recipes' packages import this first.

THP_MEM_ALLOC_ENABLE=1 makes PyTorch's CPU allocator align tensors of 2 MB or more to 2 MB and mark them for
transparent huge pages (madvise), so a fresh 50-80 MB activation or gradient buffer costs a few dozen page
faults instead of ~20,000. Measured on the 2-core test machine (torch 2.13, THP in `madvise` mode, 2026-11):
allocating, zeroing and touching a 77 MB tensor 24 ms -> 5 ms; SIM's DIN training step 36k -> 48-54k
samples/s. A value already in the environment (e.g. 0) is respected. It has no effect if torch was
imported before this module (the allocator reads it once), and none on GPU memory.
"""

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
