"""ROS-free per-frame pipeline shared by the node, the live demo and the benchmarks."""
