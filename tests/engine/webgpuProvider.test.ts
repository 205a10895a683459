// The WebGPU provider entry: ORT's own device, or one without `subgroups` on adapters whose
// subgroups are narrower than onnxruntime-web's flash-attention shader assumes.
import { describe, expect, it } from 'vitest';
import { chooseWebGpuProvider, MIN_FLASH_ATTENTION_SUBGROUP, type SubgroupGpu } from '../../src/engine/session';

function fakeGpu(features: string[], subgroupMinSize?: number) {
  const requests: GPUDeviceDescriptor[] = [];
  const device = { label: 'custom' } as unknown as GPUDevice;
  // Limits are getters on the prototype, as in browsers.
  const limits = Object.create({ get maxBufferSize() { return 2 ** 30; }, get maxStorageBufferBindingSize() { return 2 ** 29; }, get maxComputeWorkgroupStorageSize() { return 32768; } });
  const gpu: SubgroupGpu = {
    requestAdapter: async () => ({
      features: new Set(features),
      limits,
      info: subgroupMinSize === undefined ? {} : { subgroupMinSize },
      requestDevice: async (descriptor?: GPUDeviceDescriptor) => {
        requests.push(descriptor!);
        return device;
      },
    }),
  };
  return { gpu, requests, device };
}

describe('chooseWebGpuProvider', () => {
  it('lets ORT create its device when subgroups are wide enough, absent or unknown', async () => {
    for (const [features, lanes] of [[['subgroups', 'shader-f16'], 32], [['subgroups'], MIN_FLASH_ATTENTION_SUBGROUP], [['shader-f16'], 4], [['subgroups'], undefined]] as const) {
      const { gpu, requests } = fakeGpu([...features], lanes);
      expect(await chooseWebGpuProvider(gpu)).toBe('webgpu');
      expect(requests).toHaveLength(0);
    }
    expect(await chooseWebGpuProvider(undefined)).toBe('webgpu');
    expect(await chooseWebGpuProvider({ requestAdapter: async () => null })).toBe('webgpu');
  });

  it('creates a device without subgroups, with every other feature and the adapter limits, for 4-lane subgroups', async () => {
    const { gpu, requests, device } = fakeGpu(['subgroups', 'subgroup-size-control', 'shader-f16', 'timestamp-query', 'chromium-experimental-timestamp-query-inside-passes'], 4);
    expect(await chooseWebGpuProvider(gpu)).toEqual({ name: 'webgpu', device });
    expect(requests).toHaveLength(1);
    expect([...requests[0].requiredFeatures!].sort()).toEqual(['shader-f16', 'timestamp-query']);
    expect(requests[0].requiredLimits).toEqual({ maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: 2 ** 29, maxComputeWorkgroupStorageSize: 32768 });
  });
});
