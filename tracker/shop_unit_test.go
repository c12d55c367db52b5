package tracker

import "testing"

func TestSameSite(t *testing.T) {
	for _, tc := range []struct {
		got, shop string
		same      bool
	}{
		{"https://shop.example.com/", "https://shop.example.com/", true},
		{"https://shop.example.com/", "https://shop.example.com", true},
		{"https://shop.example.com", "https://shop.example.com/", true},
		{"https://SHOP.Example.com/", "https://shop.example.com", true},
		{"HTTPS://shop.example.com/", "https://shop.example.com", true},
		{"https://example.com/shop/", "https://example.com/shop", true},
		{"https://example.com/Shop/", "https://example.com/shop", false}, // paths are case-sensitive
		{"https://example.com/", "https://example.com/shop", false},
		{"http://shop.example.com/", "https://shop.example.com", false},
		{"https://shop.example.com:8443/", "https://shop.example.com", false},
		{"https://shop.example.com/?x=1", "https://shop.example.com", false},
		{"", "https://shop.example.com", false},
		{"shop.example.com", "https://shop.example.com", false},
	} {
		if got := sameSite(tc.got, tc.shop); got != tc.same {
			t.Errorf("sameSite(%q, %q) = %v, want %v", tc.got, tc.shop, got, tc.same)
		}
	}
}

func TestValidSignature(t *testing.T) {
	secret, body := []byte("s3cret"), []byte(`{"id":1}`)
	good := sign(secret, body)
	for _, tc := range []struct {
		name   string
		secret []byte
		sig    string
		ok     bool
	}{
		{"good", secret, good, true},
		{"surrounding spaces", secret, " " + good + " ", true},
		{"other secret", []byte("other"), good, false},
		{"empty secret verifies nothing", nil, sign(nil, body), false},
		{"missing", secret, "", false},
		{"not base64", secret, "!!" + good, false},
		{"truncated", secret, good[:len(good)-4], false},
		{"hex instead of base64", secret, "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b", false},
	} {
		if got := validSignature(tc.secret, body, tc.sig); got != tc.ok {
			t.Errorf("%s: validSignature = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestWooPing(t *testing.T) {
	for body, ping := range map[string]bool{
		"webhook_id=3": true, "webhook_id=123\n": true, "webhook_id=": false, "webhook_id=3&x=1": false,
		`{"webhook_id":3}`: false, "": false, "webhook_id=-1": false,
	} {
		if got := wooPing(nil, []byte(body)); got != ping {
			t.Errorf("wooPing(%q) = %v, want %v", body, got, ping)
		}
	}
}
