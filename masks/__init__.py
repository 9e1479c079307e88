"""Mask cases, generators and mask I/O. A mask is ``np.bool_`` ``H x W``, ``True`` = hole."""

from masks.cases import CASES, MaskCase, case_mask, get_case

__all__ = ["CASES", "MaskCase", "case_mask", "get_case"]
