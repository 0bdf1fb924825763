"""The tolerance table: every comparison in the tests takes its rtol/atol from here.

Backends against the NumPy reference: the reference computes distances in float64 with the
direct form and casts to the input's dtype, and every backend reports exact distances, so
they agree to a few units of the output's rounding. Against scikit-learn, whose float64
euclidean uses the expanded form, the agreement is looser (its own cancellation).
"""

import numpy as np

# (rtol, atol) for distances, by dtype.
BACKEND_VS_REFERENCE = {np.float32: (2e-6, 1e-6), np.float64: (1e-12, 1e-12)}
REFERENCE_VS_SKLEARN = {np.float32: (1e-6, 1e-6), np.float64: (1e-9, 1e-9)}
# Two float64 distances closer than this (relative) are a tie: either index is right.
TIE_RTOL = {np.float32: 1e-6, np.float64: 1e-12}


def distance_tol(table, dtype):
    rtol, atol = table[np.dtype(dtype).type]
    return {"rtol": rtol, "atol": atol}

# KMeans from the same initial centres (DESIGN.md): inertia rtol by dtype.
KMEANS_INERTIA_RTOL = {np.float32: 1e-4, np.float64: 1e-5}
KMEANS_CENTERS_RTOL = {np.float32: 1e-4, np.float64: 1e-7}

# GaussianMixture (DESIGN.md). Every backend computes in float64 and returns X's dtype, so
# backends agree with the NumPy reference to float64 rounding (numba: rtol 1e-10), and in
# float32 to one float32 rounding of the output. Against scikit-learn: float64 is the same
# formula (a few ulps); in float32 scikit-learn computes in float32 (E[x^2] - mean^2 for
# "diag"/"spherical"/"tied" cancels), so parameters agree to rtol 1e-4 with an atol.
# (rtol, atol) by dtype.
GMM_BACKEND_VS_REFERENCE = {np.float32: (2e-6, 2e-5), np.float64: (1e-10, 1e-10)}
GMM_REFERENCE_VS_SKLEARN = {np.float32: (1e-4, 1e-3), np.float64: (1e-9, 1e-9)}
# Fits from the same initial parameters: lower_bound_ and lower_bounds_ (rtol), parameters
# (rtol, atol). In float32 scikit-learn's own rounding moves the lower bound by ~1e-5 along
# slow EM paths (random initialisations).
GMM_LOWER_BOUND_RTOL = {np.float32: 1e-4, np.float64: 1e-5}
GMM_PARAMETERS_TOL = {np.float32: (1e-4, 1e-4), np.float64: (1e-4, 1e-10)}


def gmm_tol(table, dtype):
    rtol, atol = table[np.dtype(dtype).type]
    return {"rtol": rtol, "atol": atol}

# Hierarchical clustering (linkage). Every backend computes in float64 whatever X's dtype (as
# SciPy does). Ward heights come from centroids here and from the Lance-Williams update in
# SciPy: the two roundings differ by a few float64 ulps per merge, compounded along the tree;
# average/complete/single use the same arithmetic as SciPy's and agree to the last bits, but
# native backends may sum a distance in another order. (rtol, atol) for merge heights.
LINKAGE_HEIGHT_TOL = (1e-9, 1e-12)
