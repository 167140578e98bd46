"""The mesh world: furnished triangle-mesh rooms (Sweet Home 3D's free furniture models and the
project's procedural loudspeakers), rendered with pyrender and made audible with SoundSpaces
2.0's ray tracer (rlr-audio-propagation) or, without it, pyroomacoustics.

catalogue: the furniture models and their splits; scene: sampling furnished rooms;
render_gl: RGB-D + instance masks; acoustics_rlr: ambisonic RIRs in the project's AmbiX.
"""
