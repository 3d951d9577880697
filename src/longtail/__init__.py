"""longtail: make image classifiers fair to rare classes.

See, re-balance, learn, judge and compare on long-tailed image data.
"""

from longtail.distribution import ClassDistribution, GroupRuleSpec
from longtail.weights import class_weights, sample_weights

__all__ = ["ClassDistribution", "GroupRuleSpec", "class_weights", "sample_weights"]
__version__ = "0.1.0"
