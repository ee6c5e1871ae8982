"""The NumPy oracle: every cnnkit op, forward and backward, in float64.

Written for clarity, not speed (plain loops and einsum), and sharing no code
with the native kernels, so that tests compare two independent
implementations. Inputs are NumPy arrays; outputs are float64 arrays.
The backward functions are themselves checked against finite differences
(tests/test_reference.py).
"""

import numpy as np

# ----------------------------------------------------------------------------
# convolution
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# batch normalisation
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# linear, softmax and losses
# ----------------------------------------------------------------------------
