// Package testvectors holds the official WXBizMsgCrypt test vectors from
// WeCom's published samples (doc 90968 and the official SDK samples; see
// docs/protocol.md §1), so that
// every package tests against the same known-good values.
package testvectors

// App is one app's callback credentials from an official sample.
type App struct {
	Token          string
	EncodingAESKey string
	ReceiveID      string
}

// Request is one signed request from an official sample and what it must
// decrypt to.
type Request struct {
	Name      string
	App       App
	Signature string
	Timestamp string
	Nonce     string
	// Encrypt is the echostr for URL verification, the Encrypt element or
	// encrypt field otherwise.
	Encrypt string
	// Format is "get" for URL verification, "xml" or "json" for POST.
	Format string
	// Plaintext is the expected decrypted message, exactly.
	Plaintext string
}

// V1 is the app of the official Go and C# samples and of the worked example
// in WeCom's callback docs.
var V1 = App{Token: "QDG6eK", EncodingAESKey: "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", ReceiveID: "wx5823bf96d3bd56c7"}

// V2 is the app of the official Python sample.
var V2 = App{Token: "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo", EncodingAESKey: "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt", ReceiveID: "ww1436e0e65a779aee"}

// All returns every official vector. It returns fresh values so callers may
// modify them.
func All() []Request {
	return []Request{
		{
			Name: "V1/get", App: V1, Format: "get",
			Signature: "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", Timestamp: "1409659589", Nonce: "263014780",
			Encrypt:   "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
			Plaintext: "1616140317555161061",
		},
		{
			Name: "V1/post-xml", App: V1, Format: "xml",
			Signature: "477715d11cdb4164915debcba66cb864d751f3e6", Timestamp: "1409659813", Nonce: "1372623149",
			Encrypt: "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==",
			Plaintext: "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n" +
				"<FromUserName><![CDATA[mycreate]]></FromUserName>\n" +
				"<CreateTime>1409659813</CreateTime>\n" +
				"<MsgType><![CDATA[text]]></MsgType>\n" +
				"<Content><![CDATA[hello]]></Content>\n" +
				"<MsgId>4561255354251345929</MsgId>\n" +
				"<AgentID>218</AgentID>\n" +
				"</xml>",
		},
		{
			Name: "V1/post-json", App: V1, Format: "json",
			Signature: "0623cbc5a8cbee5bcc137c70de99575366fc2af3", Timestamp: "1409659813", Nonce: "1372623149",
			Encrypt:   "CZWs4CWRpI4VolQlvn4dlEC1alN2MUEY2VklGehgBVLBrlVF7SyT+SV+Toj43l4ayJ9UMGKphktKKmP7B2j/P1ey67XB8PBgS7Wr5/8+w/yWriZv3Vmoo/MH3/1HsIWZrPQ3N2mJrelStIfI2Y8kLKXA7EhfZgZX4o+ffdkZDM76SEl79Ib9mw7TGjZ9Aw/x/A2VjNbV1E8BtEbRxYYcQippYNw7hr8sFfa3nW1xLdxokt8QkRX83vK3DFP2F6TQFPL2Tu98UwhcUpPvdJBuu1/yiOQIScppV3eOuLWEsko=",
			Plaintext: `{"ToUserName":"wx5823bf96d3bd56c7","FromUserName":"mycreate","CreateTime": 1409659813,"MsgType":"text","Content":"hello","MsgId":4561255354251345929,"AgentID": 218}`,
		},
		{
			Name: "V2/get", App: V2, Format: "get",
			Signature: "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", Timestamp: "1476416373", Nonce: "47744683",
			Encrypt:   "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA==",
			Plaintext: "1288432023552776189",
		},
		{
			Name: "V2/post-xml", App: V2, Format: "xml",
			Signature: "0c3914025cb4b4d68103f6bfc8db550f79dcf48e", Timestamp: "1476422779", Nonce: "1597212914",
			Encrypt:   "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLNshw2AEew+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24YhmZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwocugux082f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+",
			Plaintext: "<xml><ToUserName>ww1436e0e65a779aee</ToUserName><FromUserName>ChenJiaShun</FromUserName><CreateTime>1476422779</CreateTime><MsgType>text</MsgType><Content>你好</Content><MsgId>1456453720</MsgId><AgentID>1000002</AgentID></xml>",
		},
	}
}
