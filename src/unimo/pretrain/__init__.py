"""UNIMO pre-training (paper section 3).

* :mod:`.masking`, :mod:`.phrases`, :mod:`.losses` - masking strategies, phrase detection and the losses.
* :mod:`.data` - the three corpora (text, images, image-text pairs), per-example masking and the batch layouts.
* :mod:`.model` - ``UnimoForPretraining``: backbone + LM / region / CMCL heads, every loss in one forward.
* :mod:`.run` - the entry point (``script/pretrain/<corpus>/run.sh``); :mod:`.eval_retrieval` - zero-shot retrieval
  with the CMCL projections.

Nothing is imported here so that ``import unimo.pretrain.masking`` stays light.
"""
