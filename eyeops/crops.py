"""The recogniser's input geometry, shared by alignment (OpenCV side) and the model (torch side)."""

CROP_HEIGHT = 32
CROP_WIDTH = 128
