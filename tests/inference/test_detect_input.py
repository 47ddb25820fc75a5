"""detect() input validation and property tests: any array or argument either gives a
well-formed result or raises InvalidInputError, never another exception and never a silent
empty or wrong result for a threshold above 1, a 0..1-scaled float image, a 16-bit image or a
mean-subtracted one."""
import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import shared_path
from rcnn.inference.input_check import InvalidInputError, check_pixel_range, check_threshold


@pytest.fixture(scope='module')
def mnet25():
    from retinaface import RetinaFace
    return RetinaFace(str(shared_path('models', 'mnet.25') / 'mnet.25'), 0, ctx_id=-1)


@pytest.fixture(scope='module')
def tom_cruise():
    return cv2.imread(str(shared_path('images', 'Tom_Cruise_avp_2014_4.jpg')))


@pytest.mark.parametrize('threshold', [1.5, 2, -0.1, None, '0.5', float('nan'), float('inf'),
                                       True])
def test_threshold_outside_0_1_is_refused(mnet25, tom_cruise, threshold):
    with pytest.raises(InvalidInputError, match='threshold must be a face probability in'):
        mnet25.detect(tom_cruise, threshold=threshold)
    with pytest.raises(InvalidInputError, match='threshold'):
        mnet25.detect_batch([tom_cruise], threshold=threshold)


def test_threshold_edges_are_accepted(mnet25, tom_cruise):
    assert len(mnet25.detect(tom_cruise, threshold=1.0)[0]) == 0
    assert len(mnet25.detect(tom_cruise, threshold=np.float32(0.5))[0]) == 1
    assert len(mnet25.detect(tom_cruise, threshold=0)[0]) > 1


def test_float_image_scaled_to_0_1_is_refused_with_the_rescale(mnet25, tom_cruise):
    scaled = tom_cruise.astype(np.float32) / 255.0
    with pytest.raises(InvalidInputError, match=r'raw 0\.\.255.*\(img \* 255\)'):
        mnet25.detect(scaled, threshold=0.5)
    with pytest.raises(InvalidInputError, match=r'images\[1\].*0\.\.255'):
        mnet25.detect_batch([tom_cruise, scaled])
    # the documented rescale gives the uint8 result (same pixel values)
    faces, _ = mnet25.detect(scaled * 255.0, threshold=0.5)
    expected, _ = mnet25.detect(tom_cruise, threshold=0.5)
    np.testing.assert_allclose(faces, expected, rtol=1e-4, atol=1e-2)


def test_float_image_edge_cases():
    black = np.zeros((8, 8, 3), np.float32)
    assert check_pixel_range(black) is black           # all zero: nothing to rescale
    assert check_pixel_range(np.full((4, 4, 3), 1.5, np.float64)) is not None
    ones = np.ones((4, 4, 3), np.uint8)                 # integer images are raw pixels
    assert check_pixel_range(ones) is ones
    with pytest.raises(InvalidInputError, match='NaN or infinite'):
        check_pixel_range(np.full((4, 4, 3), np.nan, np.float32))
    assert check_threshold(0) == 0.0 and check_threshold(np.float64(1)) == 1.0


@pytest.fixture
def png16(tmp_path, tom_cruise):
    """A hand-made 16-bit PNG of the photo (each 8-bit value v stored as v * 257) and its path."""
    path = tmp_path / 'tom16.png'
    assert cv2.imwrite(str(path), tom_cruise.astype(np.uint16) * 257)
    return path


def test_16_bit_image_is_refused_by_every_entry_point(mnet25, tom_cruise, png16):
    image16 = cv2.imread(str(png16), cv2.IMREAD_UNCHANGED)
    assert image16.dtype == np.uint16 and image16.max() > 255
    hint = r'uint16 with values in \[\d+, \d+\].*16-bit.*np\.rint\(%s / 257\)'
    with pytest.raises(InvalidInputError, match=hint % 'img'):
        mnet25.detect(image16)
    with pytest.raises(InvalidInputError, match=hint % r'images\[1\]'):
        mnet25.detect_batch([tom_cruise, image16])
    faces, landmarks = mnet25.detect(tom_cruise)
    with pytest.raises(InvalidInputError, match=hint % 'img'):
        mnet25.align(image16, landmarks)
    # both conversions the message names give the 8-bit photo back, and so its faces
    converted = np.rint(image16 / 257).astype(np.uint8)
    np.testing.assert_array_equal(converted, tom_cruise)
    np.testing.assert_array_equal(cv2.imread(str(png16)), tom_cruise)
    np.testing.assert_allclose(mnet25.detect(converted)[0], faces)


def test_values_outside_0_255_are_refused_whatever_the_dtype(mnet25, tom_cruise):
    for image in (tom_cruise.astype(np.int32) * 4, tom_cruise.astype(np.float32) * 257):
        with pytest.raises(InvalidInputError, match='raw 8-bit pixel values 0..255'):
            mnet25.detect(image)
    normalised = tom_cruise.astype(np.float32) - 127.5
    with pytest.raises(InvalidInputError, match='mean-subtracted or normalised'):
        mnet25.detect(normalised)
    with pytest.raises(InvalidInputError, match='mean-subtracted'):
        mnet25.detect(tom_cruise.astype(np.int16) - 128)


def test_resampling_overshoot_is_accepted():
    """Bicubic resampling of an 8-bit image overshoots 0..255 a little: still raw pixels."""
    edge = np.zeros((16, 16, 3), np.float32)
    edge[:, 8:] = 255
    overshoot = cv2.resize(edge, (40, 40), interpolation=cv2.INTER_CUBIC)
    assert overshoot.max() > 255 and overshoot.min() < 0
    assert check_pixel_range(overshoot) is overshoot
    assert check_pixel_range(np.full((4, 4, 3), 255 + 32, np.int32)) is not None
    with pytest.raises(InvalidInputError):
        check_pixel_range(np.full((4, 4, 3), 255 + 33, np.int32))


def test_uncommon_dtypes_run_at_any_scale(mnet25, tom_cruise):
    """int64 / float16 images are valid input; cv2.resize has no kernel for them."""
    expected, _ = mnet25.detect(tom_cruise, threshold=0.5, scales=[0.5])
    for dtype in (np.int64, np.float16, np.uint32):
        faces, _ = mnet25.detect(tom_cruise.astype(dtype), threshold=0.5, scales=[0.5])
        np.testing.assert_allclose(faces, expected, rtol=1e-3, atol=0.5)


def test_bad_scales_are_one_clear_error(mnet25, tom_cruise):
    for scales in (['a'], [None], object(), [[1.0]]):
        with pytest.raises(InvalidInputError, match='scales'):
            mnet25.detect(tom_cruise, scales=scales)
    with pytest.raises(InvalidInputError, match='scale 1766 turns the 240x320 image into more '
                                                'than 8192 pixels'):
        mnet25.detect(tom_cruise[:320, :240], scales=[1.0, 1766])
    with pytest.raises(InvalidInputError, match='more than 8192 pixels'):     # found by hypothesis
        mnet25.detect(tom_cruise, scales=[5.99e306])


# ----------------------------------------------------------------------------- properties

_REAL_DTYPES = st.sampled_from([np.uint8, np.int16, np.int64, np.float16, np.float32,
                                np.float64, np.bool_, np.complex64])
_IMAGES = hnp.arrays(
    dtype=_REAL_DTYPES,
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=24))
_THRESHOLDS = st.one_of(st.none(), st.booleans(), st.text(max_size=3),
                        st.floats(allow_nan=True, allow_infinity=True),
                        st.integers(-3, 3))


def _check_result(result):
    faces, landmarks = result
    assert faces.dtype == np.float32 and faces.ndim == 2 and faces.shape[1] == 5
    assert landmarks.shape == (len(faces), 5, 2)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=_IMAGES, threshold=_THRESHOLDS)
def test_any_array_and_threshold_give_faces_or_invalid_input(mnet25, image, threshold):
    try:
        result = mnet25.detect(image, threshold=threshold)
    except InvalidInputError as err:
        assert str(err) and '\n' not in str(err)
        return
    _check_result(result)
    assert 0.0 <= float(threshold) <= 1.0 and not isinstance(threshold, bool)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scales=st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(
                            lambda v: not 5.0 < v < 1e4),    # big but allowed: slow forwards
                        st.lists(st.one_of(st.floats(-2, 3), st.text(max_size=2), st.none()),
                                 max_size=3)),
       do_flip=st.booleans())
def test_any_scales_give_faces_or_invalid_input(mnet25, scales, do_flip):
    image = np.full((24, 30, 3), 128, np.uint8)
    try:
        result = mnet25.detect(image, threshold=0.5, scales=scales, do_flip=do_flip)
    except InvalidInputError as err:
        assert str(err) and '\n' not in str(err)
        return
    _check_result(result)


def test_pyramid_schedule_validates_like_detect(mnet25, tom_cruise):
    from rcnn.inference.pipeline import Schedule
    schedule = Schedule(flip_batch=True, scale_workers=2)
    with pytest.raises(InvalidInputError, match='threshold'):
        mnet25.detect_images([tom_cruise], 1.5, [1.0], True, schedule)
    with pytest.raises(InvalidInputError, match=r'0\.\.255'):
        mnet25.detect_images([tom_cruise / 255.0], 0.5, schedule=schedule)
