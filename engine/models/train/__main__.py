import sys

from engine.models.train.train import main

sys.exit(main())
