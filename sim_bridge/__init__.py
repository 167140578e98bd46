"""sim_bridge: a procedural indoor RGB-D + first-order-ambisonics simulator (ROS-free core)."""
