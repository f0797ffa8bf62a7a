package layout

import "encoding/json"

// jsonEnd is how an End travels in JSON: EOF as -1, as lfs prints it.
func jsonEnd(end int64) int64 {
	if end == EOF {
		return -1
	}
	return end
}

// componentFields has Component's fields without its JSON methods.
type componentFields Component

// MarshalJSON encodes the component with an End of EOF written as -1.
func (c Component) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		componentFields
		End int64
	}{componentFields(c), jsonEnd(c.End)})
}

// UnmarshalJSON decodes a component, reading an End of -1 as EOF.
func (c *Component) UnmarshalJSON(b []byte) error {
	var v struct {
		componentFields
		End int64
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*c = Component(v.componentFields)
	c.End = v.End
	if c.End == -1 {
		c.End = EOF
	}
	return nil
}

// componentSpecFields has ComponentSpec's fields without its JSON methods.
type componentSpecFields ComponentSpec

// MarshalJSON encodes the component spec with an End of EOF written as -1.
func (c ComponentSpec) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		componentSpecFields
		End int64
	}{componentSpecFields(c), jsonEnd(c.End)})
}

// UnmarshalJSON decodes a component spec. An End of -1 stays -1, which
// Validate and Resolve read as EOF like 0.
func (c *ComponentSpec) UnmarshalJSON(b []byte) error {
	var v componentSpecFields
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*c = ComponentSpec(v)
	return nil
}
