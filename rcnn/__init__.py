"""RetinaFace training and inference library (MXNet)."""
