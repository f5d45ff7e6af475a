"""The body prior: BlazePose's person segmentation on a crop around the body, fused with the
selfie matte so that objects next to the person stop being cut out with them."""
