"""The demo family: synthetic prompted datasets that train and evaluate offline (see
docs/tasks.md). Data comes from `families`, prompts from `prompts/`, the vocabulary from
`spiece.model` (rebuilt by `build_vocab`)."""

import os

ROOT = os.path.dirname(os.path.abspath(__file__))
VOCAB_PATH = os.path.join(ROOT, "spiece.model")
