"""World-frame talker tracks: a small TF buffer and a tracker fusing bearings and ranges (ROS-free)."""
