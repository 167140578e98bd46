"""Pretrained detectors that run on this CPU with weights shipped inside their wheels: people
(mediapipe pose and face, OpenCV HOG), voice activity (silero VAD) and voice identity
(Resemblyzer). A stage after classical (the depth-blob candidates are its fallback) and before
the pipeline; nothing here downloads anything at run time.
"""
