package v1

// AnnotationApproveTrafficCut set to "true" on a NetworkPolicy lets
// `apply --traffic-window` go ahead with a change that blocks flows the
// node agents observed in the window, when this policy is one of those
// that cut them: the review saw the cut and wants it.
const AnnotationApproveTrafficCut = "swarmsec.io/approve-traffic-cut"
