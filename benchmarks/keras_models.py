"""The five notebooks' own Keras models, one builder per lit_vision preset, for the "Keras" column of the
throughput benchmark (benchmarks/keras_throughput.py). Runs in the separate TensorFlow environment made by
benchmarks/setup_keras_venv.sh; imports only keras (and nothing from lit_vision).

Each builder returns ``(model, batch_size, input_shape, num_outputs)``: the compiled ``keras.Model`` with the
notebook's architecture, loss, optimizer and ``model.fit`` metrics; the notebook's training batch size; the
per-sample input shape the notebook fed it (HWC for the convnets; the dense nets take what the notebook fed
them); and the width of the output layer. Sources: /work/shared/seeds/00*.txt (the notebooks' code) and
docs seed-reference.md. Layers take Keras' defaults wherever the notebook did (Glorot-uniform kernels, zero
biases, BatchNormalization momentum 0.99 / eps 1e-3, optimizer defaults besides the learning rates named).

``metrics=False`` compiles without the notebook's metrics (loss only); ``jit_compile`` is passed to
``Model.compile`` (Keras' "auto" means no XLA on a CPU-only machine, which is what the notebooks ran).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
from keras import layers

Built = tuple[keras.Model, int, tuple[int, ...], int]

# Label format each notebook's loss consumed: one-hot float vectors ("onehot"), integer class ids ("sparse",
# image_dataset_from_directory), or a single 0/1 float ("binary", sigmoid + BCE).
LABELS: dict[str, str] = {
    "horse_cnn": "onehot",
    "cifar10_model_s": "sparse",
    "fashion_dense": "onehot",
    "fashion_cnn_final": "onehot",
    "mnist_dense_mse": "onehot",
    "mnist_cnn": "onehot",
    "fer_custom_cnn": "binary",
}

# Pixel range the model's input expects: notebook 001 feeds image_dataset_from_directory's raw 0..255 floats
# into a Rescaling(1/255) layer; the others divide by 255 before fit.
RAW_PIXELS: frozenset[str] = frozenset({"cifar10_model_s"})

# (trainable, total) parameter counts, from the notebooks' printed summaries where they have one.
EXPECTED_PARAMS: dict[str, tuple[int, int]] = {
    "horse_cnn": (325_020, 325_020),  # notebook 000 summary
    "cifar10_model_s": (815_018, 815_914),  # notebook 001 summary (896 BN moving stats)
    "fashion_dense": (51_474, 51_474),  # notebook 002 summary
    # notebook 002 create_model(dropout 0.2) with its 224-filter third conv (the summary printed for the
    # plain CNN shows 2224 filters; create_model's default, used for the final model, is 224). BatchNorm on
    # the 23*23*224 = 118,496 flattened features holds 236,992 non-trainable moving statistics.
    "fashion_cnn_final": (7_033_162, 7_270_490),
    # notebook 003's dense cell is not in the export: 784-256-128-10, as lit_vision's mnist_dense preset
    "mnist_dense_mse": (235_146, 235_146),
    "mnist_cnn": (34_826, 34_826),  # notebook 003 summary
    "fer_custom_cnn": (75_761, 75_761),  # notebook 004 summary
}


def _compile(
    model: keras.Model, optimizer, loss, metrics: list, use_metrics: bool, jit_compile
) -> None:
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics if use_metrics else None,
        jit_compile=jit_compile,
    )


def horse_cnn(*, metrics: bool = True, jit_compile="auto") -> Built:
    """Notebook 000: CIFAR-10 horse vs rest. 5 x [Conv k2/k3 same ReLU, MaxPool 2], dense 50-100-200-300, 2 softmax."""
    model = keras.Sequential(
        [
            keras.Input(shape=(32, 32, 3)),
            layers.Conv2D(16, kernel_size=2, activation="relu", padding="same"),
            layers.MaxPooling2D(pool_size=(2, 2), strides=2),
            layers.Conv2D(32, kernel_size=2, activation="relu", padding="same"),
            layers.MaxPooling2D(pool_size=(2, 2), strides=2),
            layers.Conv2D(64, kernel_size=3, activation="relu", padding="same"),
            layers.MaxPooling2D(pool_size=(2, 2), strides=2),
            layers.Conv2D(128, kernel_size=3, activation="relu", padding="same"),
            layers.MaxPooling2D(pool_size=(2, 2), strides=2),
            layers.Conv2D(256, kernel_size=2, activation="relu", padding="same"),
            layers.MaxPooling2D(pool_size=(2, 2), strides=2),
            layers.Flatten(),
            layers.Dense(50, activation="relu"),
            layers.Dense(100, activation="relu"),
            layers.Dense(200, activation="relu"),
            layers.Dense(300, activation="relu"),
            layers.Dense(2, activation="softmax"),
        ],
        name="horse_cnn",
    )
    _compile(
        model, "adam", "categorical_crossentropy", ["accuracy"], metrics, jit_compile
    )
    return model, 500, (32, 32, 3), 2


def cifar10_model_s(*, metrics: bool = True, jit_compile="auto") -> Built:
    """Notebook 001 "Model S": Rescaling(1/255), 3 x [Conv3x3 ReLU, BN, Conv3x3 ReLU, BN, MaxPool2] (32/64/128),
    Flatten, Dropout 0.5, Dense 256 ReLU, Dropout 0.5, Dense 10 softmax; RMSprop 1e-3, sparse categorical CE."""
    inputs = keras.Input(shape=(32, 32, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    for filters in (32, 64, 128):
        x = layers.Conv2D(
            filters=filters, kernel_size=3, activation="relu", padding="same"
        )(x)
        x = layers.BatchNormalization()(x)
        x = layers.Conv2D(
            filters=filters, kernel_size=3, activation="relu", padding="same"
        )(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs=inputs, outputs=outputs, name="cifar10_model_s")
    _compile(
        model,
        keras.optimizers.RMSprop(learning_rate=1e-3),
        "sparse_categorical_crossentropy",
        ["accuracy"],
        metrics,
        jit_compile,
    )
    return model, 64, (32, 32, 3), 10


def fashion_dense(*, metrics: bool = True, jit_compile="auto") -> Built:
    """Notebook 002 baseline: Flatten(28x28), Dense 56 ReLU, Dense 112 ReLU, Dense 10 softmax; Adam lr 1e-2."""
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            layers.Flatten(),
            layers.Dense(56, activation="relu"),
            layers.Dense(112, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ],
        name="fashion_dense",
    )
    _compile(
        model,
        keras.optimizers.Adam(learning_rate=1e-2),
        keras.losses.CategoricalCrossentropy(from_logits=False),
        ["accuracy", keras.metrics.F1Score(), keras.metrics.AUC()],
        metrics,
        jit_compile,
    )
    return model, 32, (28, 28), 10


def fashion_cnn_final(*, metrics: bool = True, jit_compile="auto") -> Built:
    """Notebook 002 final model, create_model(lr=1e-3, GlorotUniform, dropout_rate=0.2):
    [Conv k2 valid ReLU, MaxPool 2 stride 1, SpatialDropout2D] x 2 (56, 112), Conv 224 k2, Flatten,
    3 x [BatchNorm, Dense ReLU (56, 112, 224), Dropout], Dense 10 softmax; Adam 1e-3."""
    rate = 0.2
    glorot = keras.initializers.GlorotUniform
    model = keras.Sequential(name="fashion_cnn_final")
    model.add(keras.Input(shape=(28, 28, 1)))
    for filters in (56, 112):
        model.add(
            layers.Conv2D(
                filters, (2, 2), activation="relu", kernel_initializer=glorot()
            )
        )
        model.add(layers.MaxPooling2D(pool_size=(2, 2), strides=(1, 1)))
        model.add(layers.SpatialDropout2D(rate))
    model.add(
        layers.Conv2D(224, (2, 2), activation="relu", kernel_initializer=glorot())
    )
    model.add(layers.Flatten())
    for units in (56, 112, 224):
        model.add(layers.BatchNormalization())
        model.add(layers.Dense(units, activation="relu", kernel_initializer=glorot()))
        model.add(layers.Dropout(rate=rate))
    model.add(layers.Dense(10, activation="softmax"))
    _compile(
        model,
        keras.optimizers.Adam(learning_rate=1e-3),
        keras.losses.CategoricalCrossentropy(from_logits=False),
        ["accuracy", keras.metrics.F1Score(), keras.metrics.AUC()],
        metrics,
        jit_compile,
    )
    return model, 32, (28, 28, 1), 10


def mnist_dense_mse(*, metrics: bool = True, jit_compile="auto") -> Built:
    """Notebook 003 dense net on flattened 784-pixel vectors, softmax output trained with mean squared error
    on one-hot targets, Adam. Its architecture cell is cut from the export: 784-256-128-10 (lit_vision's)."""
    model = keras.Sequential(
        [
            keras.Input(shape=(784,)),
            layers.Dense(256, activation="relu"),
            layers.Dense(128, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ],
        name="mnist_dense_mse",
    )
    _compile(model, "adam", "mean_squared_error", ["accuracy"], metrics, jit_compile)
    return model, 128, (784,), 10


def mnist_cnn(*, metrics: bool = True, jit_compile="auto") -> Built:
    """Notebook 003 CNN: Conv 32 k3 ReLU, MaxPool 2, Conv 64 k3 ReLU, MaxPool 2, Flatten, Dropout 0.5,
    Dense 10 softmax; Adam, categorical CE. (The notebook set batch_size=128 but did not pass it to fit.)"""
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ],
        name="mnist_cnn",
    )
    _compile(
        model, "adam", "categorical_crossentropy", ["accuracy"], metrics, jit_compile
    )
    return model, 128, (28, 28, 1), 10


def fer_custom_cnn(*, metrics: bool = True, jit_compile="auto") -> Built:
    """Notebook 004 custom CNN: [Conv k3 valid ReLU, MaxPool 2] x 3 (16, 32, 16), Flatten, Dense 256 ReLU,
    Dense 1 sigmoid; Adam, binary CE."""
    model = keras.Sequential(
        [
            keras.Input(shape=(48, 48, 3)),
            layers.Conv2D(16, (3, 3), 1, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, (3, 3), 1, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(16, (3, 3), 1, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="fer_custom_cnn",
    )
    _compile(
        model,
        "adam",
        keras.losses.BinaryCrossentropy(),
        ["accuracy"],
        metrics,
        jit_compile,
    )
    return model, 32, (48, 48, 3), 1


PRESETS: dict[str, Callable[..., Built]] = {
    "horse_cnn": horse_cnn,
    "cifar10_model_s": cifar10_model_s,
    "fashion_dense": fashion_dense,
    "fashion_cnn_final": fashion_cnn_final,
    "mnist_dense_mse": mnist_dense_mse,
    "mnist_cnn": mnist_cnn,
    "fer_custom_cnn": fer_custom_cnn,
}


def param_counts(model: keras.Model) -> tuple[int, int]:
    """(trainable, total) parameter counts, as model.summary() prints them."""
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    total = sum(math.prod(w.shape) for w in model.weights)
    return trainable, total
