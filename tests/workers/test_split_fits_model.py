"""A validation or test split runs the training split's model: it must fit that split's problem too, and the
mismatch is a HandshakeError found when the split is set up (before any folder or step), not at the first
validation."""

from __future__ import annotations

import pytest

from miprometheus.config import load_config
from miprometheus.config.experiment_spec import validate
from miprometheus.errors import HandshakeError
from miprometheus.workers.setup import set_up_split
from tests.conftest import TINY_SERIAL


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(TINY_SERIAL)
    # validation items of 4 data bits, the model trained on the training problem's 8
    return validate(load_config([path], ["validation.problem.data_bits=4"]))


def test_the_training_model_is_checked_against_the_validation_problem(spec):
    training = set_up_split(spec, spec.splits["training"], "cpu", sampler_seed=0, own_assets=True)
    with pytest.raises(HandshakeError, match="SerialRecall"):
        set_up_split(spec, spec.splits["validation"], "cpu", sampler_seed=0, with_model=False,
                     fits_model=training.model)
    # the testing split (8 bits, as training) fits
    set_up_split(spec, spec.splits["testing"], "cpu", sampler_seed=0, with_model=False, fits_model=training.model)


def test_mip_checks_model_for_a_validation_split_is_the_one_training_builds(spec):
    training = set_up_split(spec, spec.splits["training"], "cpu", sampler_seed=0, own_assets=True)
    # built from the validation problem's own values, the model would fit it and hide the mismatch
    fitted = set_up_split(spec, spec.splits["validation"], "cpu", sampler_seed=0)
    assert fitted.model.params.input_item_size != training.model.params.input_item_size
    with pytest.raises(HandshakeError):
        set_up_split(spec, spec.splits["validation"], "cpu", sampler_seed=0,
                     model_values=training.problem.default_values)
