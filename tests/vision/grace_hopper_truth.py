"""Hand-made ground truth for matplotlib's ``grace_hopper.jpg`` (512 x 600, public domain).

Traced by eye on 2x-3x gridded crops of the photo: the person (cap, head, hair, ears, neck,
uniform) is this one polygon; everything else (flag, flagpole, sky) is background. Keypoints:
pixel positions labelled the same way (pupil centres, nose tip, ear centres, the shoulder
joints under the uniform); a head-and-shoulders portrait, so the arms, hips and legs are absent.
"""

from __future__ import annotations

SIZE = (512, 600)

PERSON_POLYGON = [
    (175, 82), (188, 58), (217, 37), (240, 27), (263, 23), (287, 28), (317, 43), (343, 63),
    (353, 80), (363, 88), (370, 107), (372, 140), (370, 173), (375, 190), (373, 215),
    (370, 240), (364, 258), (357, 270), (347, 290), (338, 305), (350, 330), (380, 345),
    (430, 365), (470, 372), (490, 380), (500, 400), (507, 425), (512, 440), (512, 600),
    (14, 600), (18, 530), (25, 445), (30, 420), (37, 395), (50, 375), (75, 365), (100, 355),
    (130, 345), (165, 337), (195, 325), (200, 310), (190, 292), (178, 272), (168, 250),
    (160, 225), (158, 200), (158, 170), (152, 140), (150, 110), (160, 95),
]  # fmt: skip

#: COCO-18 index -> hand-labelled pixel (x, y); indices not listed are not in the photo.
KEYPOINTS = {
    0: (265, 237),  # nose tip
    2: (80, 420),  # right shoulder (image left)
    5: (452, 420),  # left shoulder
    14: (221, 189),  # right eye
    15: (304, 186),  # left eye
    16: (172, 228),  # right ear
    17: (358, 222),  # left ear
}
ABSENT = (3, 4, 6, 7, 8, 9, 10, 11, 12, 13)

#: The face, labelled the same way: a box ``(x0, y0, x1, y1)`` from ear to ear and from the
#: forehead above the brows to under the chin, and OpenPose face points (iBUG 68 + pupils)
#: that can be placed by eye: eye corners, pupils, nose tip, mouth corners, upper lip, chin.
FACE_BOX = (150, 130, 375, 350)
FACE_POINTS = {
    8: (267, 330),  # chin
    30: (265, 237),  # nose tip
    36: (205, 188),  # right eye, outer corner (image left)
    39: (240, 190),  # right eye, inner corner
    42: (292, 187),  # left eye, inner corner
    45: (323, 185),  # left eye, outer corner
    48: (228, 277),  # mouth, right corner
    54: (308, 275),  # mouth, left corner
    68: (221, 189),  # right pupil
    69: (304, 186),  # left pupil
}
