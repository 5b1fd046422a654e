"""An independent renderer of the device layouts: other fonts, other drawing, real-world damage.

Written apart from the project's own training renderer (eyeops/synth) so that it measures how the
OCR generalises; it reads only the layout YAML files, the public contract of a device kind.
"""
