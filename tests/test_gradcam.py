"""Grad-CAM: the heat map peaks on the object, on every backend, for plain, nested and Sequential models."""

import keras
import numpy as np
import pytest
from keras import layers

from Functions.inference.gradcam import GradCAM, find_target_layer, grad_cam, input_gradient

SIZE, SIDE = 32, 10


def square_images(n: int = 6, seed: int = 0):
    """Dim noise in [0, 0.3] with one bright 10x10 square; returns images (n, 32, 32, 1) and the squares' masks."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 0.3, (n, SIZE, SIZE, 1)).astype(np.float32)
    masks = np.zeros((n, SIZE, SIZE), bool)
    for i in range(n):
        y, x = rng.integers(0, SIZE - SIDE + 1, 2)
        images[i, y:y + SIDE, x:x + SIDE] = 1.0
        masks[i, y:y + SIDE, x:x + SIDE] = True
    return images, masks


def _features(x, prefix=""):
    """A hand-set bright-square detector: 3x3 mean minus 0.5, ReLU (zero on the dim background), 4x4 pooling."""
    x = layers.Conv2D(1, 3, padding="same", activation="relu", name=f"{prefix}detector",
                      kernel_initializer=keras.initializers.Constant(1 / 9),
                      bias_initializer=keras.initializers.Constant(-0.5))(x)
    return layers.AveragePooling2D(4, name=f"{prefix}pool")(x)     # (8, 8, 1) feature map


def _head(x):
    """Class 0 'no square' and class 1 'square': logits -s and +s for the pooled evidence s."""
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(2, name="logits", kernel_initializer=keras.initializers.Constant([[-50.0, 50.0]]),
                     bias_initializer=keras.initializers.Constant([0.5, -0.5]))(x)
    return layers.Activation("softmax", name="probs")(x)


def square_detector():
    inputs = keras.Input((SIZE, SIZE, 1))
    return keras.Model(inputs, _head(_features(inputs)), name="detector")


def nested_square_detector():
    """The same network with its feature extractor wrapped in an inner model, as keras.applications backbones are."""
    inner_in = keras.Input((SIZE, SIZE, 1))
    backbone = keras.Model(inner_in, _features(inner_in, prefix="bb_"), name="backbone")
    inputs = keras.Input((SIZE, SIZE, 1))
    return keras.Model(inputs, _head(backbone(inputs)), name="nested")


def _peaks_inside(heat, masks):
    for h, m in zip(heat, masks):
        y, x = np.unravel_index(np.argmax(h), h.shape)
        assert m[y, x], f"Grad-CAM peak at {(y, x)} is outside the square"


@pytest.mark.backend
def test_peak_falls_inside_the_square():
    images, masks = square_images()
    model = square_detector()
    assert find_target_layer(model) == "pool"
    heat, cls = grad_cam(model, images)
    assert heat.shape == (6, SIZE, SIZE) and heat.dtype == np.float32
    assert cls.tolist() == [1] * 6                          # every image is classified "square"
    np.testing.assert_allclose(heat.max(axis=(1, 2)), 1.0, rtol=1e-6)
    assert heat.min() >= 0
    _peaks_inside(heat, masks)
    # the heat sits on the square: the mean inside is far above the mean outside
    assert all(h[m].mean() > 3 * h[~m].mean() for h, m in zip(heat, masks))
    # for "no square" the square is negative evidence only: after the ReLU nothing is left
    heat0, cls0 = grad_cam(model, images, class_index=0)
    assert cls0.tolist() == [0] * 6 and np.all(heat0 == 0)
    # one class per image
    _, mixed = grad_cam(model, images, class_index=[0, 1, 0, 1, 0, 1], batch_size=4)
    assert mixed.tolist() == [0, 1, 0, 1, 0, 1]


@pytest.mark.backend
def test_nested_backbone_and_layer_inside_it():
    images, masks = square_images(seed=3)
    flat = grad_cam(square_detector(), images)[0]
    model = nested_square_detector()
    assert find_target_layer(model) == "backbone"           # the backbone counts as one layer
    heat, _ = grad_cam(model, images)
    np.testing.assert_allclose(heat, flat, atol=1e-5)
    inner = GradCAM(model, layer_name="bb_detector")          # a layer inside the backbone: full resolution
    assert inner.feature_model.output.shape[1:] == (SIZE, SIZE, 1)
    _peaks_inside(inner(images)[0], masks)


@pytest.mark.backend
def test_sequential_and_probability_scores():
    images, masks = square_images(seed=5)
    functional = square_detector()
    seq = keras.Sequential([keras.Input((SIZE, SIZE, 1))] + functional.layers[1:])
    heat, _ = grad_cam(seq, images)
    _peaks_inside(heat, masks)
    g = GradCAM(functional, use_logits=False)
    assert not g.uses_logits and GradCAM(functional).uses_logits
    _peaks_inside(g(images)[0], masks)


@pytest.mark.backend
def test_input_gradient_of_a_linear_model():
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    inputs = keras.Input((4,))
    dense = layers.Dense(3, use_bias=False, kernel_initializer=keras.initializers.Constant(w))
    model = keras.Model(inputs, dense(inputs))
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    classes = np.array([0, 2, 1, 2, 0])
    np.testing.assert_allclose(input_gradient(model, x, classes), w[:, classes].T, rtol=1e-6)


@pytest.mark.backend
def test_resnet_classifiers():
    from Functions.models import build_model

    x = np.random.default_rng(0).uniform(size=(3, 32, 32, 1)).astype(np.float32)
    model = build_model("resnet18", (32, 32, 1), num_classes=3, base_filters=8)
    assert find_target_layer(model) == "stage5_block2_out"
    heat, cls = grad_cam(model, x, class_index=[2, 1, 0])
    assert heat.shape == (3, 32, 32) and np.isfinite(heat).all() and cls.tolist() == [2, 1, 0]
    assert heat.min() >= 0 and heat.max() <= 1
    with pytest.raises(ValueError, match="does not separate"):
        GradCAM(model, layer_name="stage5_block2_2_conv")     # the residual shortcut bypasses this conv


def test_keras_applications_backbone():
    """ResNet-50 from keras.applications nested as one layer (random weights: no download)."""
    from Functions.models import build_model

    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 1)).astype(np.float32)
    pretrained_style = build_model("resnet50_imagenet", (32, 32, 1), num_classes=2, weights=None)
    assert find_target_layer(pretrained_style) == "resnet50"
    heat, _ = grad_cam(pretrained_style, x)
    assert heat.shape == (2, 32, 32) and np.isfinite(heat).all()


def test_errors():
    inputs = keras.Input((4,))
    dense = keras.Model(inputs, layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="no layer with a 4-D"):
        find_target_layer(dense)
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        GradCAM(square_detector(), layer_name="nope")
    with pytest.raises(ValueError, match="4-D"):
        GradCAM(square_detector(), layer_name="gap")
