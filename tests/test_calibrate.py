"""models/calibrate.py: after calibration every BatchNorm sees zero-mean, unit-variance input."""

import numpy as np

from images import rgb_pattern


def test_batchnorm_outputs_are_normalised_on_the_calibration_images():
    import tf_keras

    from models.calibrate import calibrate_batchnorm
    from models.weights import randomize

    model = tf_keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    randomize(model, 3)
    pixels = np.stack([rgb_pattern(64, 64, 300 + i) for i in range(24)])
    from tf_keras.applications.resnet50 import preprocess_input

    names = ["conv1_bn", "conv3_block2_2_bn", "conv5_block3_3_bn"]
    probe = tf_keras.Model(model.input, [model.get_layer(n).output for n in names])
    before = probe.predict_on_batch(preprocess_input(pixels.astype(np.float32)))
    calibrate_batchnorm(model, pixels)
    after = probe.predict_on_batch(preprocess_input(pixels.astype(np.float32)))
    # Exact where the layer sees its own calibration statistics (conv1_bn); deeper layers
    # inherit small upstream differences (TF keeps the n/(n-1) variance as the moving
    # estimate, and conv5 has only 96 samples per channel here), so they are bounded, not exact.
    for name, normalised, (median_limit, max_limit) in zip(names, after, [(0.01, 0.02), (0.05, 0.2), (0.05, 0.25)]):
        mean, std = normalised.mean(axis=(0, 1, 2)), normalised.std(axis=(0, 1, 2))
        assert np.median(np.abs(mean)) < median_limit and np.abs(mean).max() < max_limit, name
        live = std > 0
        assert np.median(np.abs(std[live] - 1)) < median_limit and np.abs(std[live] - 1).max() < max_limit, name
    assert np.abs(before[-1]).mean() > 10 * np.abs(after[-1]).mean()  # it did change things
