"""``iqa_kd`` (Feng & Cai 2020): flag inputs that would fool a frozen classifier, without retraining it.

* :mod:`~attnrobust.detect.nss`: BRISQUE-style natural-scene statistics, differentiable, no weights;
* :mod:`~attnrobust.detect.corruptions`: Gaussian noise, blur and JPEG at given severities;
* :mod:`~attnrobust.detect.distill`: a small student distilled from the classifier (the teacher);
* :mod:`~attnrobust.detect.detector`: quality + teacher-student features -> logistic regression;
* :mod:`~attnrobust.detect.build`: stage detector@<name> (distil, fit on clean vs. degraded, save);
* :mod:`~attnrobust.detect.evaluate`: stage detect@<name> (ROC per attack, eps, corruption;
  the adaptive attack on classifier and detector together).
"""
