"""NetAdapt (Yang et al., ECCV 2018) to a latency budget measured on the target: ``mnbench adapt``.

``budget`` and ``proposals`` are the method's arithmetic (no TensorFlow); ``latency`` the lookup table
measured on the target; ``carry`` moves weights into a thinner model; ``loop`` runs the iterations;
``report`` writes what happened.
"""
