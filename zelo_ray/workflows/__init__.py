"""Multi-stage flows built from the stages: the demo/full pipeline (``demo.py``), the simulation
of the zELO core (``simulate.py``), the refinement pass (``refine.py``) and the Ray Tune search
(``tune.py``). Stages never import a workflow; workflows and the CLI sit above them."""
